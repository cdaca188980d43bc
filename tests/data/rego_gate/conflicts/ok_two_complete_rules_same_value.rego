package gate

limit := 10

limit := 10
