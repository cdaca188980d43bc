package gate

xs := [1, 2, 3]

first := xs.first
