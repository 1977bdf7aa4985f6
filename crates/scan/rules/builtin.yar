// Built-in Lifeboat YARA rules: the EICAR anti-malware test file and a
// marker string used by the Lifeboat tests. Real rule sets are given with
// `lifeboat scan --yara FILE`.

rule EICAR_Test_File
{
    meta:
        description = "EICAR anti-malware test file"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        $eicar
}

rule Lifeboat_Test_Marker
{
    meta:
        description = "marker planted by Lifeboat tests"
    strings:
        $m = "LIFEBOAT-TEST-MARKER-7f3a"
    condition:
        $m
}
