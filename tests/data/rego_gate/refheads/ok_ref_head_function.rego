package gate

lib.double(x) := x * 2

four := lib.double(2)
