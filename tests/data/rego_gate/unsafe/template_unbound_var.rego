package gate

allow if {
	msg := $"user {who} denied"
	msg != ""
}
