package gate

limit := 10

limit := 20
