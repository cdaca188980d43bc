package gate

a if b

b if a
