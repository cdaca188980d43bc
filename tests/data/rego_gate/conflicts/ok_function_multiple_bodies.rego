package gate

kind(x) := "number" if is_number(x)

kind(x) := "string" if is_string(x)

default kind(_) := "other"
