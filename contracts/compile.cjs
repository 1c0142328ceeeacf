#!/usr/bin/env node
// Compile contracts/CoopLedger.sol with the pinned solc-js (tools/evm) through standard JSON and
// print the artifact (ABI, bytecode, source sha256, compiler version, settings) as JSON.
//   node contracts/compile.cjs            -> artifact on stdout
//   node contracts/compile.cjs --write    -> also writes coopflower/ledger/artifacts/CoopLedger.json
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const repo = path.resolve(__dirname, '..');
let solc;
try {
  solc = require(path.join(repo, 'tools/evm/node_modules/solc'));
} catch (e) {
  process.stderr.write('solc-js missing: run `bash scripts/setup.sh --node` (installs tools/evm)\n');
  process.exit(2);
}

const NAME = 'CoopLedger';
const sourcePath = path.join(__dirname, NAME + '.sol');
const source = fs.readFileSync(sourcePath, 'utf8');
const settings = {
  evmVersion: 'paris',
  optimizer: { enabled: true, runs: 800 },
  viaIR: true,
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};
const input = { language: 'Solidity', sources: { [NAME + '.sol']: { content: source } }, settings };
const out = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (out.errors || []).filter((e) => e.severity === 'error');
for (const e of out.errors || []) process.stderr.write(e.formattedMessage + '\n');
if (errors.length) process.exit(1);
const c = out.contracts[NAME + '.sol'][NAME];
const artifact = {
  contractName: NAME,
  sourcePath: 'contracts/' + NAME + '.sol',
  sourceSha256: crypto.createHash('sha256').update(source).digest('hex'),
  compiler: { name: 'solc-js', version: solc.version() },
  settings: { evmVersion: settings.evmVersion, optimizer: settings.optimizer, viaIR: settings.viaIR },
  abi: c.abi,
  bytecode: '0x' + c.evm.bytecode.object,
  deployedBytecode: '0x' + c.evm.deployedBytecode.object,
};
const text = JSON.stringify(artifact, null, 1) + '\n';
if (process.argv.includes('--write')) {
  const dest = path.join(repo, 'coopflower/ledger/artifacts', NAME + '.json');
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.writeFileSync(dest, text);
  process.stderr.write('wrote ' + path.relative(repo, dest) + '\n');
}
process.stdout.write(text);
