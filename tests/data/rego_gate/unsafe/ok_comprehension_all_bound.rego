package gate

names := {n | some u in input.users; n := u.name}

by_name := {u.name: u | some u in input.users}
