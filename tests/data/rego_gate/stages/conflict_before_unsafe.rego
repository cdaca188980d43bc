package gate

a := 1

a contains 2

b := x if true
