package gate

a.b := 1

a.b.c := 2

d := x if true
