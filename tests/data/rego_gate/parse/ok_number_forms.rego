package gate

limits := [1, -2, 3.5, 1e3, 2.5E-2, 0]
