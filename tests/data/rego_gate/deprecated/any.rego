package gate

allow if any([false, input.ok])
