package gate

by_name := {n: u | some u in input.users; n := u.name; v > 1}
