package gate

inner if upper("a") == "A"

allow if inner with upper as concat
