package gate

a if count(5) > 0

b if nope(1)
