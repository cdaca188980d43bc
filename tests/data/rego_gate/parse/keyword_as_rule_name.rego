package gate

contains := 1
