package gate

a if count(5) > 0

b := x if true
