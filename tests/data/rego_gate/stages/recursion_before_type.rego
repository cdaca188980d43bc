package gate

a if upper(1) == "1"

b if b
