package gate

a := abs("x")
