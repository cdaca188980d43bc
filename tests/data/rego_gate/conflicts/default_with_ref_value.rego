package gate

default limit := input.limit
