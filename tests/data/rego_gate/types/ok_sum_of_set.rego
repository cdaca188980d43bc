package gate

total := sum({1, 2, 3})
