package gate

a := x if true

b if startswith("a")
