package gate

paths contains p if {
	walk(doc, [p, _])
}
