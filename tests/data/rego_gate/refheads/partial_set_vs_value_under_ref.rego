package gate

p.q contains 1

p.q := 2
