package gate

total := sum("a")
