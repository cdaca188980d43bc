package gate

users[name] := info if {
	some info in input.users
	name := info.name
}
