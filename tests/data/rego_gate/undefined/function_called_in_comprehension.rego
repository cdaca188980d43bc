package gate

names := [normalise(u) | some u in input.users]
