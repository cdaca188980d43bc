package gate

data := 1
