package gate

msg := sprintf("hello")
