package gate

names := {n | n := users[_].name}
