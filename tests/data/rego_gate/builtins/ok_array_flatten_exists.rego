package gate

flat := array.flatten([[1], [2]])
