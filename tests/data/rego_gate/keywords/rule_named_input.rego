package gate

input := 1
