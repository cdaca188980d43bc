package gate

xs := [y | y := 1; y := 2]
