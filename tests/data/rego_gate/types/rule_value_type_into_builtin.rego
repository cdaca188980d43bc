package gate

limit := 10

shout := upper(limit)
