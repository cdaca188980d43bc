package gate

secrets contains concat("/", [format_int(i, 10) | some i in path]) if {
	walk(input, [path, value])
	is_string(value)
	startswith(value, "secret:")
	every p in path {
		is_number(p)
	}
}

keys contains k if {
	walk(input, [path, _])
	count(path) > 0
	k := path[count(path) - 1]
}
