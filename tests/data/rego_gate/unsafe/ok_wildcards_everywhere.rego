package gate

allow if {
	input.users[_].roles[_] == "admin"
}
