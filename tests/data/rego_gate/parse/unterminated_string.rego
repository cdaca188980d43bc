package gate

msg := "hello
