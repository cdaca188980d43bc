package gate

allow if {
	input.user == "alice"
}

deny contains msg if {
	not allow
	msg := "not alice"
}
