package gate

names := [name | some user in input.users; user.active]
