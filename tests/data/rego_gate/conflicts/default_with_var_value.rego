package gate

default limit := x
