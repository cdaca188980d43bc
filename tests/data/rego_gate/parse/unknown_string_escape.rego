package gate

msg := "tab\q"
