package gate

users[name].admin := true if {
	some name in input.admins
}
