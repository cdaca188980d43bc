package gate

allow {
	input.user == "alice"
}
