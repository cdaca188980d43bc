package gate

n := "a" + 1
