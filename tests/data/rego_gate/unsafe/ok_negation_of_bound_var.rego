package gate

deny contains name if {
	some name in input.users
	not name in {"alice", "bob"}
}
