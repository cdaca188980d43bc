package gate

allow if {
	is_admin
}
