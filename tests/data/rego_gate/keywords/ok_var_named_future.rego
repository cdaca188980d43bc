package gate

allow if {
	future := 1
	future == 1
}
