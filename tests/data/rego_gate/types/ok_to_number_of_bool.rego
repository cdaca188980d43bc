package gate

n := to_number(true)
