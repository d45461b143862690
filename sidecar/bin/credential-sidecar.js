#!/usr/bin/env node
// The bin shim stays plain JavaScript so npm links it as-is; Node 24 strips types from the .ts it imports.
import { main } from '../src/main.ts'

process.exitCode = await main(process.argv.slice(2))
