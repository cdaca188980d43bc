package gate

allow if {
	print("user", user)
	input.user == "alice"
}
