#!/usr/bin/perl
# Over a large text, for the LD_PRELOAD tests: a hash with a million keys
# (first word of each line and its number modulo 50), a hash of line
# lengths, regular expressions, substitutions and sorting. Deterministic.
use strict;
use warnings;

my (%key, %len, @kept);
my ($lines, $chars, $sum) = (0, 0, 0);
while (my $line = <STDIN>) {
    $lines++;
    $chars += length $line;
    my $num = substr($line, rindex($line, ' ') + 1) + 0;
    $sum += $num;
    $key{"$1:" . ($num % 50)}++ if $line =~ /^(\S+)/;
    $len{length $line}++;
    push @kept, $line if $lines % 500 == 0;
}
my @common = sort { $key{$b} <=> $key{$a} || $a cmp $b } grep { $key{$_} > 100 } keys %key;
print "lines $lines chars $chars sum $sum keys ", scalar(keys %key), " common ", scalar(@common), "\n";
print "$_ $key{$_}\n" for @common[0 .. 19];
my @lengths = sort { $len{$b} <=> $len{$a} || $a <=> $b } keys %len;
print "length $_ $len{$_}\n" for @lengths[0 .. 9];
my $text = join '', @kept;
(my $vowels = $text) =~ s/[aeiou]+/*/g;
my %words;
$words{$_}++ for $vowels =~ /(\w+)/g;
print "kept ", scalar(@kept), " words ", scalar(keys %words), " length ", length($vowels), "\n";
