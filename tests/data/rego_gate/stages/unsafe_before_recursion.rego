package gate

a if a

b := x if true
