package gate

a := 2

a.b := 1
