package gate

limit := 1.2.3
