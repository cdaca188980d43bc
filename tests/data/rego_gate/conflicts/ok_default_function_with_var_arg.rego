package gate

default f(x) := 1

f(x) := 2 if x > 1
